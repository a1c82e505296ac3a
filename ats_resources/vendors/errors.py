"""Vendor errors that a user can act on, and redaction of secrets from anything printed."""

import re

_SECRET_PARAMS = re.compile(r"(?i)((?:api_?key|apikey|token|secret|key_id|password)=)[^&\s\"']+")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]+")
_HEADERS = re.compile(
    r"(?i)((?:apca-api-[a-z-]+|x-api-key|authorization|api[-_]?key)\s*[:=]\s*)[^\s,;\"']+"
)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with secret query parameters, bearer tokens and the given secret values masked."""
    out = _HEADERS.sub(r"\1***", _BEARER.sub(r"\1***", _SECRET_PARAMS.sub(r"\1***", text)))
    for secret in secrets:
        if secret:
            out = out.replace(secret, "***")
    return out


# What a user can do about a status code, by vendor-independent meaning.
HINTS = {
    401: "the API key was rejected: check the key's environment variable",
    403: "the key is not entitled to this data: check your plan's entitlements (for example real-time or SIP access)",
    404: "the endpoint or symbol was not found: check the base URL and the ticker",
    429: "the rate limit was still exceeded after retries: lower the requests-per-minute setting or upgrade the plan",
}


class VendorError(RuntimeError):
    """A request to a vendor that failed for good: names the vendor, endpoint, ticker and the fix."""

    def __init__(
        self,
        vendor: str,
        endpoint: str,
        message: str,
        *,
        ticker: str | None = None,
        status: int | None = None,
        hint: str | None = None,
        retryable: bool = False,
    ):
        self.vendor, self.endpoint, self.ticker, self.status = vendor, endpoint, ticker, status
        self.message = redact(message)
        self.retryable = retryable
        self.hint = hint or (HINTS.get(status) if status else None)
        where = f"{vendor} {endpoint}" + (f" for {ticker}" if ticker else "")
        text = f"{where}: {message}" + (f" (HTTP {status})" if status else "")
        if self.hint:
            text += f"; {self.hint}"
        super().__init__(redact(text))

    def with_hint(self, gave_up: str) -> "VendorError":
        """This error with a hint when it has none: ``gave_up`` once retries ran out, or what a
        rejected request means (400/422); unchanged otherwise."""
        if self.hint:
            return self
        if self.retryable:
            hint = gave_up
        elif self.status in (400, 422):
            hint = "the request was rejected as invalid: check the ticker and the time range"
        else:
            return self
        return VendorError(
            self.vendor,
            self.endpoint,
            self.message,
            ticker=self.ticker,
            status=self.status,
            hint=hint,
            retryable=self.retryable,
        )
