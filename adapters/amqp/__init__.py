"""RabbitMQ: the durable, load-levelling path into the router (aio-pika)."""
