"""`python -m http_server [flags]`: run the API under gunicorn (gevent workers)
with the shipped `gunicorn_conf`. A start-up failure (a bad flag here; a bad
variable or the port in use in `gunicorn_conf`) is one line on stderr and
exit status 2."""

import sys

from gunicorn.app.wsgiapp import run

from http_server import config
from plumbing.settings import StartupError, fail


def main(argv: list[str] | None = None) -> None:
    try:
        # Parsed once for this process (gunicorn_conf and the worker class reuse it) and exported to the
        # environment, where the workers and a re-executed gunicorn find the flags.
        config.export(config.for_process(argv).config)
    except StartupError as e:
        fail("http_server", e)
    sys.argv = ["gunicorn", "--config", "python:http_server.gunicorn_conf", "http_server.app:get_app()"]
    run()


if __name__ == "__main__":
    main()
