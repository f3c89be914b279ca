"""Twilio's WhatsApp API: form webhooks signed with X-Twilio-Signature, the Messages API, and
voice notes served from our own short-lived public media URL (reference/whatsapp.md §6)."""
