"""The CRM's HTTP way in and Offergrid's webhook receiver, as one FastAPI app (`create_api`)."""

from preclose.app.api.app import create_api

__all__ = ["create_api"]
