"""The fake Twilio API for tests: it lives in ``api.channels.whatsapp.fake_twilio`` because the
WhatsApp sandbox (``concierge run --whatsapp-sandbox``) serves it too; tests import it from here."""

from api.channels.whatsapp.fake_twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    WHATSAPP_FROM,
    FakeTwilio,
    SentRecord,
    SignedRequest,
    TwilioSigner,
)

__all__ = ["ACCOUNT_SID", "AUTH_TOKEN", "WHATSAPP_FROM", "FakeTwilio", "SentRecord", "SignedRequest", "TwilioSigner"]
