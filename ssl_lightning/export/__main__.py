"""`python -m ssl_lightning.export`: runs `encoders.main`, which lists the arguments."""

from ssl_lightning.export.encoders import main

if __name__ == "__main__":
    raise SystemExit(main())
