# The consumer's image, for docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY consumer consumer
COPY producer_hooks producer_hooks
RUN pip install --no-cache-dir ".[consumer]"
USER nobody
ENTRYPOINT ["report-consumer"]
CMD ["run"]
