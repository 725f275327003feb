"""Adapters: everything that touches the outside world (files, RabbitMQ, databases, HTTP, CLI)."""
