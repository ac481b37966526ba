"""The console fixtures (app client, staff users, logged-in clients) for the CX tests."""

from tests.consoles.conftest import console, fake_rasa, logged_in, make_app_client, make_staff

__all__ = ["console", "fake_rasa", "logged_in", "make_app_client", "make_staff"]
