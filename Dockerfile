# The lienthong image: the `lienthong` command (API, router, TSA, administration).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY exchange ./exchange
COPY adapters ./adapters
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/lienthong lienthong \
    && mkdir -p /var/lib/lienthong && chown lienthong /var/lib/lienthong
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER lienthong
ENV LIENTHONG_DATA_DIR=/var/lib/lienthong
EXPOSE 8470
ENTRYPOINT ["lienthong"]
CMD ["--help"]
