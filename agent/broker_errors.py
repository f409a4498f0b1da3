"""Why the broker would not have us, in words a technician can act on; the TLS context of an endpoint.

Every message names the broker's host:port and the config key to check (`broker.ca_file`, or
`broker.endpoints[1].ca_file` for a setting of one endpoint). docs/broker.md §4 lists them.
"""

from __future__ import annotations

import os
import socket
import ssl

from agent.config_model import Endpoint
from protocols.mqtt_packet import CONNACK_CODES

# paho 2 reports an MQTT 3.1.1 CONNACK code as an MQTT 5 reason code; the 3.1.1 numbers for the log
CONNACK_V311 = {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}
# refusals 1..5 in the words the fleet tools and the board use too
CONNACK_TEXT = {code: text for code, text in enumerate(CONNACK_CODES) if code}


class TlsSetupError(ValueError):
    """The TLS files of the broker config cannot be used (the message names the file and why)."""


def tls_context(ep: Endpoint) -> ssl.SSLContext:
    """The client TLS context of an endpoint: the broker's certificate is checked against `ca_file`
    (else the system CAs) and its name against `host`; `cert_file`/`key_file` is our identity.
    Raises TlsSetupError naming the file that is missing or unusable."""
    ca = ep.ca_file
    if ca is not None and not os.path.isfile(ca):
        raise TlsSetupError("%s %s does not exist" % (ep.key("ca_file"), ca))
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise TlsSetupError("%s %s is not a PEM CA certificate: %s" % (ep.key("ca_file"), ca, exc)) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ep.cert_file is not None:
        for key in ("cert_file", "key_file"):
            path = getattr(ep, key)
            if path is not None and not os.path.isfile(path):
                raise TlsSetupError("%s %s does not exist" % (ep.key(key), path))
        try:
            context.load_cert_chain(ep.cert_file, ep.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise TlsSetupError(
                "client certificate %s %s / %s %s cannot be used: %s (both PEM, the key unencrypted and "
                "belonging to the certificate)" % (ep.key("cert_file"), ep.cert_file, ep.key("key_file"),
                                                   ep.key_file or "(in the cert file)", exc)) from None
    return context


def describe_refusal(code: int, ep: Endpoint, config_path: str, reason: str = "") -> str:
    """Why the broker refused our CONNECT (MQTT 3.1.1 CONNACK `code`; an MQTT 5 reason that has no 3.1.1
    number comes as its own number with paho's `reason` text) and what to check."""
    where = "broker %s:%d refused the connection: %s (CONNACK %d)" % (
        ep.host, ep.port, CONNACK_TEXT.get(code, reason or "unknown reason"), code)
    if code in (4, 5):
        if ep.username is not None:
            hint = ("check %s (%r) and %s in %s against the broker's password file"
                    % (ep.key("username"), ep.username, ep.key("password"), config_path))
        elif ep.cert_file is not None:
            hint = ("the broker does not accept the identity of %s %s (with use_identity_as_username its CN "
                    "is the user name): check the broker's users and ACL"
                    % (ep.key("cert_file"), ep.cert_file))
        else:
            hint = "the broker wants credentials: set broker.username and broker.password in %s" % config_path
        return "%s; %s" % (where, hint)
    if code == 2:
        return "%s; set another broker.client_id in %s" % (where, config_path)
    if code == 1:
        return "%s; this agent speaks MQTT 3.1.1 and 5" % where
    return where


def describe_connect_error(exc: BaseException, ep: Endpoint) -> str:
    """A failed TCP connect or TLS handshake, with the likely fix."""
    broker = ep
    where = "%s:%d" % (broker.host, broker.port)
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = (exc.verify_message or str(exc)).rstrip(".")
        text = "TLS: the certificate of broker %s was not accepted: %s" % (where, reason)
        if exc.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH / IP_ADDRESS_MISMATCH
            return "%s; %s %r must be a name (or IP) in the broker's certificate" % (
                text, "broker.host" if ep.where == "broker" else "the host of " + ep.where, broker.host)
        if exc.verify_code in (9, 10):  # not yet valid / expired
            return "%s; check the certificate's dates and this gateway's clock" % text
        if broker.ca_file is not None:
            return "%s; is %s %s the CA that signed the broker's certificate?" % (
                text, ep.key("ca_file"), broker.ca_file)
        return "%s; set %s to the CA that signed the broker's certificate" % (text, ep.key("ca_file"))
    if isinstance(exc, ssl.SSLError):
        text = "TLS handshake with broker %s failed: %s" % (where, exc)
        if "WRONG_VERSION_NUMBER" in str(exc) or "record layer failure" in str(exc):
            return "%s; is %d a TLS port (MQTT over TLS is usually 8883, plain 1883)?" % (text, broker.port)
        return text
    if isinstance(exc, socket.gaierror):
        return "cannot resolve %s %r: %s" % (
            "broker.host" if ep.where == "broker" else "the host of " + ep.where, broker.host, exc)
    if isinstance(exc, ConnectionRefusedError):
        return "cannot connect to broker %s: connection refused (is the broker running on that port?)" % where
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "cannot connect to broker %s: no answer (timeout)" % where
    if isinstance(exc, ConnectionResetError) and broker.tls:
        return ("cannot connect to broker %s: connection reset during the TLS handshake (%s; is it a TLS "
                "port, and does it want a client certificate?)" % (where, exc))
    return "cannot connect to broker %s: %s" % (where, exc)


def describe_lost_before_connack(ep: Endpoint, detail: str) -> str:
    """The connection closed before the broker answered CONNECT."""
    broker = ep
    text = "broker %s:%d closed the connection before answering CONNECT" % (broker.host, broker.port)
    if detail:
        text += ": " + detail
    low = detail.lower()
    if not broker.tls:
        return text
    if "certificate required" in low:
        return "%s; the broker requires a client certificate: set %s and %s" % (
            text, ep.key("cert_file"), ep.key("key_file"))
    if broker.cert_file is not None and ("certificate" in low or "alert" in low or "eof" in low):
        return ("%s; the broker did not accept our client certificate %s (is it signed by the CA the broker "
                "trusts, and still valid?)" % (text, broker.cert_file))
    if broker.cert_file is None and ("ssl" in low or "eof" in low):
        return ("%s; the broker ended the TLS session: if it requires client certificates, set "
                "broker.cert_file and broker.key_file" % text)
    return text


__all__ = ["CONNACK_TEXT", "CONNACK_V311", "TlsSetupError", "describe_connect_error",
           "describe_lost_before_connack", "describe_refusal", "tls_context"]
