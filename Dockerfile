# One image for both servers; docker-compose.yml picks the command.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY idl ./idl
COPY rpc_server ./rpc_server
COPY http_server ./http_server
RUN pip install --no-cache-dir --disable-pip-version-check -c requirements.lock .

ENV PYTHONUNBUFFERED=1
USER nobody
EXPOSE 8888 8080
CMD ["python", "-m", "rpc_server"]
