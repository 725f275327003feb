"""Forged envelopes: headers and signatures that do not belong together, substituted and
untrusted certificates, pathological chains, CRLs that must not be believed, revoked seals.

Each arrives through the HTTP API (which queues it: the router judges it) or straight over AMQP.
"""

from __future__ import annotations

import datetime as dt
import json
import time

from cryptography.hazmat.primitives.serialization import Encoding

from exchange.signing import sign_detached
from tests import forge
from tests.forge import rsa_key, signature_values, swap, utcnow, window
from tests.helpers import G22, H37, H37_FINANCE, header_bytes, header_dict
from tests.security import material as m
from tests.security.hostile import Hostile, compact, queued


def message_id(header: bytes) -> str:
    value: str = json.loads(header)["message_id"]
    return value


# --- header and signature that do not belong together ---------------------------------------


def test_header_swapped_under_a_valid_signature(hostile: Hostile) -> None:
    signed = header_bytes(recipients=[H37])
    other = header_bytes(recipients=[H37])  # another genuine header, never signed
    signature = hostile.pki.sign(signed)
    hostile.router_rejects(
        lambda: queued(hostile, other, signature),
        subject=message_id(other),
        reason="digest_mismatch",
        notice_to=G22,
    )


def test_header_swapped_under_a_valid_signature_over_amqp(hostile: Hostile) -> None:
    signed = header_bytes(recipients=[H37])
    other = header_bytes(recipients=[H37_FINANCE])
    signature = hostile.pki.sign(signed)
    hostile.router_rejects(
        lambda: hostile.publish_envelope(other, signature),
        subject=message_id(other),
        reason="digest_mismatch",
        notice_to=G22,
    )


def test_signature_over_other_bytes_of_the_same_header(hostile: Hostile) -> None:
    """Signed over a pretty-printed serialisation; the compact bytes are what is sent."""
    fields = header_dict(recipients=[H37])
    pretty = json.dumps(fields, ensure_ascii=False, indent=2).encode()
    sent = compact(fields)
    assert json.loads(pretty) == json.loads(sent)
    hostile.router_rejects(
        lambda: queued(hostile, sent, hostile.pki.sign(pretty)),
        subject=message_id(sent),
        reason="digest_mismatch",
        notice_to=G22,
    )


def test_signature_value_grafted_from_another_envelope(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37])
    signature = hostile.pki.sign(header)
    donor = hostile.pki.sign(header_bytes(recipients=[H37]))
    (own,), (grafted,) = signature_values(signature), signature_values(donor)
    forged = swap(signature + grafted, own, grafted)[: len(signature)]
    assert forged != signature
    hostile.router_rejects(
        lambda: queued(hostile, header, forged),
        subject=message_id(header),
        reason="bad_signature",
        notice_to=G22,
    )


def test_recipient_added_to_the_list_after_signing(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37])
    signature = hostile.pki.sign(header)
    widened = header.replace(f'["{H37}"]'.encode(), f'["{H37}","{H37_FINANCE}"]'.encode())
    assert widened != header
    hostile.router_rejects(
        lambda: queued(hostile, widened, signature),
        subject=message_id(widened),
        reason="digest_mismatch",
        notice_to=G22,
    )


def test_recipient_swapped_in_the_list_after_signing_over_amqp(hostile: Hostile) -> None:
    header = header_bytes(recipients=[H37])
    signature = hostile.pki.sign(header)
    redirected = header.replace(H37.encode(), H37_FINANCE.encode())
    assert len(redirected) == len(header)
    hostile.router_rejects(
        lambda: hostile.publish_envelope(redirected, signature),
        subject=message_id(redirected),
        reason="digest_mismatch",
        notice_to=G22,
    )


# --- the certificate bag -------------------------------------------------------------------


def test_signer_certificate_substituted_by_another_agencys_seal(hostile: Hostile) -> None:
    """G22's seal signs; H37's seal is what the certificate bag carries."""
    header = header_bytes(recipients=[H37])
    seal = hostile.pki.seal(G22)
    attributes = [
        forge.content_type(),
        forge.signing_time(),
        forge.message_digest(header),
        forge.signing_certificate_v2(seal.certificate),
    ]
    substituted = forge.sign_with_attributes(
        seal,
        attributes,
        content=header,
        embed=[hostile.pki.seal(H37).certificate, *hostile.pki.chain()],
    )
    hostile.router_rejects(
        lambda: queued(hostile, header, substituted),
        subject=message_id(header),
        reason="signer_certificate_missing",
        notice_to=G22,
    )


def test_signer_certificate_substituted_by_a_twin_with_the_same_issuer_and_serial(
    hostile: Hostile,
) -> None:
    """A certificate the issuing CA signed with the seal's serial number and another key: the
    signer identifier matches it, the signed signingCertificateV2 does not."""
    real = hostile.pki.seal(G22)
    twin = m.seal_from(
        m.issuing(hostile.pki), key=rsa_key(2048, 70), serial=real.certificate.serial_number
    )
    own, forged = (c.public_bytes(Encoding.DER) for c in (real.certificate, twin.certificate))
    assert len(own) == len(forged)
    header = header_bytes(recipients=[H37])
    substituted = hostile.pki.sign(header).replace(own, forged)
    hostile.router_rejects(
        lambda: queued(hostile, header, substituted),
        subject=message_id(header),
        reason="signed_attributes_invalid",
        notice_to=G22,
    )


def test_seal_issued_by_a_look_alike_ca_is_untrusted(hostile: Hostile) -> None:
    fake_ca = m.look_alike(m.issuing(hostile.pki))
    forged = m.seal_from(fake_ca, key=rsa_key(2048, 71))
    header = header_bytes(recipients=[H37])
    signature = m.sign_with(header, forged, [fake_ca.cert])
    hostile.router_rejects(
        lambda: hostile.publish_envelope(header, signature),
        subject=message_id(header),
        reason="untrusted_chain",
        notice_to=G22,
    )


def test_chain_of_pathological_length_is_untrusted(hostile: Hostile) -> None:
    """Root -> six intermediates -> seal: one more than LIENTHONG_MAX_CHAIN_DEPTH allows."""
    parent, cas = m.root(hostile.pki), []
    for depth in range(6):
        parent = m.sub_ca(parent, f"Hostile CA {depth} {m.tag()}", 40 + depth)
        cas.append(parent.cert)
    header = header_bytes(recipients=[H37])
    signature = m.sign_with(header, m.seal_from(parent), cas)
    started = time.monotonic()
    hostile.router_rejects(
        lambda: queued(hostile, header, signature),
        subject=message_id(header),
        reason="untrusted_chain",
        notice_to=G22,
    )
    assert time.monotonic() - started < 10


def test_chain_through_a_ring_of_cross_signed_cas_is_untrusted(hostile: Hostile) -> None:
    """X is issued by Y and Y by X: path building must end, and find no trust anchor."""
    from adapters.pki import profiles as p
    from tests.forge import Authority

    x_name, y_name = f"Ring X {m.tag()}", f"Ring Y {m.tag()}"
    kx, ky = rsa_key(2048, 60), rsa_key(2048, 61)
    x_cert = p.build_certificate(
        m.ca_profile(x_name), kx.public_key(), p.ca_name(y_name), ky, window(-1, 365), 11
    )
    y_cert = p.build_certificate(
        m.ca_profile(y_name), ky.public_key(), p.ca_name(x_name), kx, window(-1, 365), 12
    )
    header = header_bytes(recipients=[H37])
    signature = m.sign_with(header, m.seal_from(Authority(y_cert, ky)), [x_cert, y_cert])
    hostile.router_rejects(
        lambda: hostile.publish_envelope(header, signature),
        subject=message_id(header),
        reason="untrusted_chain",
        notice_to=G22,
    )


def test_certificate_bag_over_the_limit(hostile: Hostile) -> None:
    """Nine embedded certificates (LIENTHONG_MAX_CERTIFICATES is 8)."""
    extra = [
        m.seal_from(m.issuing(hostile.pki), key=rsa_key(2048, 80 + i)).certificate for i in range(7)
    ]
    header = header_bytes(recipients=[H37])
    signature = sign_detached(header, [hostile.pki.seal(G22)], chain=[*hostile.pki.chain(), *extra])
    hostile.router_rejects(
        lambda: queued(hostile, header, signature),
        subject=message_id(header),
        reason="too_many_certificates",
        notice_to=G22,
    )


# --- CRLs ----------------------------------------------------------------------------------


def test_crl_of_another_issuer_is_not_believed(hostile: Hostile) -> None:
    """The only CRL loaded under the seal's issuing CA's name is signed by a look-alike."""
    ca = m.sub_ca(m.root(hostile.pki), f"Issuing CA {m.tag()}", 50)
    forged_crl = m.look_alike(ca, slot=91).crl(2**40)
    hostile.load_crl(forged_crl)
    header = header_bytes(recipients=[H37])
    signature = m.sign_with(header, m.seal_from(ca), [ca.cert])
    hostile.router_rejects(
        lambda: queued(hostile, header, signature),
        subject=message_id(header),
        reason="crl_invalid",
        notice_to=G22,
    )


def test_seal_from_a_ca_whose_crl_is_not_loaded(hostile: Hostile) -> None:
    ca = m.sub_ca(m.root(hostile.pki), f"Issuing CA {m.tag()}", 51)
    header = header_bytes(recipients=[H37])
    signature = m.sign_with(header, m.seal_from(ca), [ca.cert])
    hostile.router_rejects(
        lambda: hostile.publish_envelope(header, signature),
        subject=message_id(header),
        reason="crl_missing",
        notice_to=G22,
    )


def test_expired_crl_is_no_proof_of_good_standing(hostile: Hostile) -> None:
    ca = m.sub_ca(m.root(hostile.pki), f"Issuing CA {m.tag()}", 52)
    now = utcnow()
    stale = ca.crl(
        1, this_update=now - dt.timedelta(days=10), next_update=now - dt.timedelta(days=1)
    )
    hostile.load_crl(stale)
    header = header_bytes(recipients=[H37])
    signature = m.sign_with(header, m.seal_from(ca), [ca.cert])
    hostile.router_rejects(
        lambda: queued(hostile, header, signature),
        subject=message_id(header),
        reason="crl_expired",
        notice_to=G22,
    )


def test_revoked_seal_sent_over_amqp(hostile: Hostile) -> None:
    """A second seal of G22, revoked (key compromise); its holder bypasses the HTTP API."""
    compromised = m.seal_from(m.issuing(hostile.pki), key=rsa_key(2048, 72))
    hostile.pki.dev.revoke(m.write_certificate(hostile.pki, compromised.certificate))
    time.sleep(0.6)  # the router reads the CRL file again within LIENTHONG_CRL_POLL_S
    header = header_bytes(recipients=[H37])
    signature = m.sign_with(header, compromised, hostile.pki.chain())
    hostile.router_rejects(
        lambda: hostile.publish_envelope(header, signature),
        subject=message_id(header),
        reason="certificate_revoked",
        notice_to=G22,
    )
