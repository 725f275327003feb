"""Agency codes in forms that are not canonical: nothing is normalised on the way in, so none
of them names a registered agency (see schemas/agency.py)."""

from __future__ import annotations

from tests.e2e.support import message_id_of
from tests.helpers import G22, H37, header_bytes
from tests.security import material as m
from tests.security.hostile import Hostile, queued


def refused_sender(hostile: Hostile, code: str) -> None:
    """A header whose sender is ``code``, sealed by G22: the code is not canonical, so the API
    cannot tell whose it is (it queues it) and the router rejects it, telling no one."""
    header = header_bytes(sender=code, recipients=[H37])
    signature = hostile.pki.sign(header)
    hostile.router_rejects(
        lambda: queued(hostile, header, signature),
        subject=message_id_of(header),
        reason="invalid_agency_code",
        notice_to=None,
    )


def refused_recipient(hostile: Hostile, code: str) -> None:
    header = header_bytes(recipients=[H37, code])
    signature = hostile.pki.sign(header)
    hostile.router_rejects(
        lambda: hostile.publish_envelope(header, signature),
        subject=message_id_of(header),
        reason="invalid_agency_code",
        notice_to=G22,
    )


def test_lowercase_sender_code(hostile: Hostile) -> None:
    refused_sender(hostile, G22.lower())


def test_sender_code_padded_with_spaces(hostile: Hostile) -> None:
    refused_sender(hostile, f" {G22} ")


def test_sender_code_with_a_zero_width_space(hostile: Hostile) -> None:
    refused_sender(hostile, G22.replace(".G22", ".\u200bG22"))


def test_recipient_code_in_fullwidth_digits(hostile: Hostile) -> None:
    refused_recipient(hostile, "０００.００.０１.H37")


def test_recipient_code_with_a_cyrillic_look_alike_letter(hostile: Hostile) -> None:
    refused_recipient(hostile, "000.00.01.\u041d37")  # CYRILLIC CAPITAL LETTER EN


def test_recipient_code_with_an_empty_group(hostile: Hostile) -> None:
    refused_recipient(hostile, "000..01.H37")


def test_recipient_code_longer_than_35_characters(hostile: Hostile) -> None:
    refused_recipient(hostile, ".".join(["00000000"] * 4) + ".H37")  # 39 characters


def test_seal_whose_organization_identifier_is_lowercase(hostile: Hostile) -> None:
    """A genuine seal issued with ``000.00.00.g22``: it is not G22's, whatever a lenient
    comparison would say."""
    seal = m.seal_from(m.issuing(hostile.pki), code=G22.lower())
    header = header_bytes(recipients=[H37])
    signature = m.sign_with(header, seal, hostile.pki.chain())
    hostile.router_rejects(
        lambda: queued(hostile, header, signature),
        subject=message_id_of(header),
        reason="sender_mismatch",
        notice_to=G22,
    )


def test_trace_search_by_a_non_canonical_code_finds_nothing(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37])
    hostile.deliver(header, hostile.pki.sign(header))
    assert hostile.admin.search_trace(sender=G22, limit=1)["items"]
    for code in (G22.lower(), f" {G22}", G22 + "\u200b"):
        found = hostile.admin.search_trace(sender=code)
        assert found == {"items": [], "next_cursor": None}, code
    hostile.assert_alive()
