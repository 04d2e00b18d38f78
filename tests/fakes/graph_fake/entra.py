"""Entra ID (v2.0): OpenID discovery, instance metadata and the client-credentials token
endpoint, with Entra's real error bodies."""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlsplit

from .model import (
    GRAPH_APP_ID,
    GRAPH_RESOURCE,
    _b64url,
    _now,
    _Reply,
    _Req,
    _Token,
)

if TYPE_CHECKING:
    pass


class EntraMixin:
    """Part of :class:`~tests.fakes.graph_fake.GraphFake` (whose state it uses)."""

    # -- Entra ID -----------------------------------------------------------------------------

    def _entra(self, req: _Req) -> _Reply:
        segs = [unquote(s) for s in req.path.strip("/").split("/")]
        with self._lock:
            rule = self._match_rule(req, None)
            if rule is not None:
                self._stats.injected += 1
                if rule.status == 200:
                    rule = None
        if rule is not None:
            if rule.delay:
                time.sleep(rule.delay)
            return self._rule_reply(req, rule, graph=False)
        if segs[:3] == ["common", "discovery", "instance"]:
            return self._instance_discovery(req)
        if len(segs) == 4 and [s.lower() for s in segs[1:]] == [
            "v2.0",
            ".well-known",
            "openid-configuration",
        ]:
            with self._lock:
                self._stats.discovery_requests += 1
            return self._openid_configuration(segs[0])
        if len(segs) == 4 and [s.lower() for s in segs[1:]] == ["oauth2", "v2.0", "token"]:
            if req.method != "POST":
                return _Reply(405, b"", {"Allow": "POST"})
            with self._lock:
                self._stats.token_requests += 1
                return self._token(req, segs[0])
        if len(segs) == 4 and [s.lower() for s in segs[1:]] == ["discovery", "v2.0", "keys"]:
            return _Reply(200, json.dumps({"keys": []}).encode())
        return _Reply(404, b"Not Found", content_type="text/plain")

    def _aad_error(self, status: int, error: str, code: int, description: str) -> _Reply:
        now = _now()
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        text = (
            f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} "
            f"Timestamp: {now:%Y-%m-%d %H:%M:%SZ}"
        )
        body = {
            "error": error,
            "error_description": text,
            "error_codes": [code],
            "timestamp": now.strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"{self.base_url}/error?code={code}",
        }
        return _Reply(status, json.dumps(body).encode(), {"Cache-Control": "no-store, no-cache"})

    def _instance_discovery(self, req: _Req) -> _Reply:
        host = urlsplit(self.base_url).netloc
        endpoint = req.query.get("authorization_endpoint", "")
        tenant = urlsplit(endpoint).path.strip("/").split("/")[0] if endpoint else "common"
        body = {
            "tenant_discovery_endpoint": f"{self.base_url}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }
        return _Reply(200, json.dumps(body).encode())

    def _openid_configuration(self, tenant_ref: str) -> _Reply:
        with self._lock:
            tenant = self._tenant(tenant_ref)
        if tenant is None and tenant_ref.lower() not in {"common", "organizations", "consumers"}:
            return self._aad_error(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant_ref}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud. Check with your subscription administrator, "
                "this may happen if there are no active subscriptions for the tenant.",
            )
        tid = tenant.tenant_id if tenant else "{tenantid}"
        base = f"{self.base_url}/{tid}"
        body = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.base_url}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "roles"],
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": urlsplit(self.base_url).netloc,
        }
        return _Reply(200, json.dumps(body).encode())

    def _token(self, req: _Req, tenant_ref: str) -> _Reply:
        form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        tenant = self._tenant(tenant_ref)
        if tenant is None:
            return self._aad_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant_ref}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud.",
            )
        grant = form.get("grant_type", "")
        if grant != "client_credentials":
            return self._aad_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        client_id = form.get("client_id", "")
        secret = form.get("client_secret")
        auth = req.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):  # client_secret_basic (what msal sends)
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                client_id, secret = unquote(user.replace("+", " ")), unquote(password.replace("+", " "))
            except (ValueError, UnicodeDecodeError):
                pass
        app = self._apps.get(client_id)
        if app is None or app.tenant_id != tenant.tenant_id:
            return self._aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant.display_name}'. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant. You may "
                "have sent your authentication request to the wrong tenant.",
            )
        if not secret:
            if form.get("client_assertion"):
                return self._aad_error(401, "invalid_client", 700027, "Client assertion failed signature validation.")
            return self._aad_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        if secret != app.secret:
            return self._aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the "
                f"client secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        if app.secret_expired:
            return self._aad_error(
                401,
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{client_id}' are expired. Visit the Azure "
                "portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider "
                "using certificate credentials for added security: https://aka.ms/certCreds.",
            )
        scopes = form.get("scope", "").split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return self._aad_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {form.get('scope', '')} is not valid. Client credential "
                "flows must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        resource = scopes[0][: -len("/.default")].rstrip("/")
        if resource not in {GRAPH_RESOURCE, GRAPH_APP_ID}:
            return self._aad_error(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{tenant.display_name}. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant.",
            )
        now = time.time()
        expires_in = self._token_expires_in
        claims = {
            "aud": GRAPH_RESOURCE,
            "iss": f"https://sts.windows.net/{tenant.tenant_id}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + expires_in,
            "app_displayname": "WebAdmin archive",
            "appid": app.client_id,
            "appidacr": "1",
            "idtyp": "app",
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, app.client_id)),
            "roles": sorted(app.roles),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, app.client_id)),
            "tid": tenant.tenant_id,
            "uti": _b64url(secrets.token_bytes(16)),
            "ver": "1.0",
        }
        header = {"typ": "JWT", "alg": "RS256", "kid": "graph-fake"}
        token = ".".join(
            [
                _b64url(json.dumps(header).encode()),
                _b64url(json.dumps(claims).encode()),
                _b64url(secrets.token_bytes(64)),
            ]
        )
        lifetime = self._token_server_lifetime if self._token_server_lifetime is not None else expires_in
        issued = self.clock()  # server-side expiry on the fake's clock, which tests may move
        self._tokens[token] = _Token(app, issued, issued + lifetime)
        self._stats.tokens_issued += 1
        body = {
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": token,
        }
        return _Reply(200, json.dumps(body).encode(), {"Cache-Control": "no-store, no-cache"})
