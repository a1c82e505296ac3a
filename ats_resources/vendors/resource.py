"""What every HTTP vendor resource configures the same way: timeouts and retries."""

import dagster as dg
from pydantic import Field

from ats_resources.vendors.http import RetryPolicy


class VendorRetrySettings(dg.ConfigurableResource):
    """Per-request timeout and the retry policy, shared by the HTTP vendor resources."""

    timeout_s: float = Field(default=10.0, gt=0, description="Per-request timeout, seconds.")
    max_attempts: int = Field(default=6, ge=1, description="Tries per request, first included.")
    max_elapsed_s: float = Field(
        default=120.0, gt=0, description="Give up retrying a request after this many seconds."
    )
    retry_base_delay_s: float = Field(
        default=0.5, ge=0, description="First retry's backoff ceiling (doubles each retry)."
    )
    retry_max_delay_s: float = Field(default=30.0, ge=0, description="Backoff ceiling, seconds.")

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            max_elapsed_s=self.max_elapsed_s,
            base_delay_s=self.retry_base_delay_s,
            max_delay_s=self.retry_max_delay_s,
        )
