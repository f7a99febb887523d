# The rpc-server image: slim, non-root, the packages pinned by requirements.lock,
# idl/ inside (package data). Build from the repository root:
#   docker build -f deploy/docker/rpc-server.Dockerfile .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY idl ./idl
COPY plumbing ./plumbing
COPY rpc_server ./rpc_server
COPY http_server ./http_server
COPY imctl ./imctl
RUN pip install --no-cache-dir --disable-pip-version-check --prefix=/install -c requirements.lock .

FROM python:3.11-slim
COPY --from=build /install /usr/local
ENV PYTHONUNBUFFERED=1
USER 65534:65534
EXPOSE 8888 8889
CMD ["python", "-m", "rpc_server"]
