"""Messaging domain: contacts, email, SMS and an inbox."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from tools.catalog.world import World

DOMAIN = "messaging"

_EMAIL = re.compile(r"^[\w.+-]+@[\w-]+\.[\w.-]+$")


def functions(world: World) -> list[Callable]:
    def search_contacts(query: str, limit: int = 5) -> dict:
        """Search the address book by name, email or city.

        Args:
            query: Text to look for, e.g. a first name.
            limit: Maximum number of contacts to return.
        """
        q = str(query).strip().lower()
        if not q:
            raise ValueError("query must not be empty")
        hits = [c for c in world.contacts if q in c["name"].lower() or q in c["email"] or q == c["city"].lower()]
        return {"query": query, "contacts": [dict(c) for c in hits[: max(0, limit)]]}

    def get_contact_details(contact_id: str) -> dict:
        """Get the full record of a contact.

        Args:
            contact_id: Identifier of the contact, e.g. "C-104".
        """
        for c in world.contacts:
            if c["contact_id"] == contact_id:
                return dict(c)
        raise ValueError(f"no contact with id {contact_id!r}")

    def send_email_message(to: list[str], subject: str, body: str, cc: list[str] | None = None,
                   priority: Literal["low", "normal", "high"] = "normal") -> dict:
        """Send an email to one or more recipients.

        Args:
            to: Recipient email addresses.
            subject: Subject line.
            body: Message text.
            cc: Addresses to copy.
            priority: Delivery priority.
        """
        bad = [a for a in [*to, *(cc or [])] if not _EMAIL.match(str(a))]
        if not to or bad:
            raise ValueError(f"invalid recipient address(es): {bad or 'none given'}")
        mid = world.new_id("MSG")
        world.sent.append({"message_id": mid, "channel": "email", "to": list(to), "subject": subject, "body": body})
        return {"message_id": mid, "status": "sent", "recipients": len(to) + len(cc or []), "priority": priority}

    def send_sms(phone_number: str, message: str) -> dict:
        """Send a text message to a phone number.

        Args:
            phone_number: Number in international format, e.g. "+1-555-201-3344".
            message: Text of the message (at most 480 characters).
        """
        if not re.fullmatch(r"\+?[0-9][0-9 -]{6,18}", str(phone_number)):
            raise ValueError(f"invalid phone number {phone_number!r}")
        if len(message) > 480:
            raise ValueError("message is longer than 480 characters")
        mid = world.new_id("SMS")
        world.sent.append({"message_id": mid, "channel": "sms", "to": [phone_number], "body": message})
        return {"message_id": mid, "status": "delivered", "segments": len(message) // 160 + 1}

    def list_inbox(unread_only: bool = False, limit: int = 10) -> dict:
        """List recent messages in the email inbox, newest first.

        Args:
            unread_only: Only list unread messages.
            limit: Maximum number of messages.
        """
        msgs = sorted((m for m in world.inbox if m["unread"] or not unread_only), key=lambda m: (m["date"], m["message_id"]), reverse=True)
        return {"messages": [{k: m[k] for k in ("message_id", "from", "subject", "date", "unread")} for m in msgs[: max(0, limit)]]}

    def read_message(message_id: str) -> dict:
        """Open a message from the inbox (marks it as read).

        Args:
            message_id: Identifier of the message, e.g. "M-503".
        """
        for m in world.inbox:
            if m["message_id"] == message_id:
                m["unread"] = False
                return dict(m)
        raise ValueError(f"no message with id {message_id!r}")

    def mark_messages_read(message_ids: list[str]) -> dict:
        """Mark several inbox messages as read.

        Args:
            message_ids: Identifiers of the messages.
        """
        known = {m["message_id"]: m for m in world.inbox}
        missing = [i for i in message_ids if i not in known]
        if missing:
            raise ValueError(f"unknown message ids: {missing}")
        for i in message_ids:
            known[i]["unread"] = False
        return {"marked_read": list(message_ids)}

    return [search_contacts, get_contact_details, send_email_message, send_sms, list_inbox, read_message, mark_messages_read]
