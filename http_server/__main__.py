"""`python -m http_server [flags]`: run the API under gunicorn (gevent workers)
with the shipped `gunicorn_conf`."""

import sys

from gunicorn.app.wsgiapp import run

from http_server import config


def main(argv: list[str] | None = None) -> None:
    config.export(config.load(argv))
    sys.argv = ["gunicorn", "--config", "python:http_server.gunicorn_conf", "http_server.app:get_app()"]
    run()


if __name__ == "__main__":
    main()
