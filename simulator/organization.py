"""The simulated org's fixed identity: its domain, contact addresses and API users."""

from __future__ import annotations

DOMAIN = "demo.example"
GLADLY_URL = "https://demo.gladly.com"
SUPPORT_ADDRESS = f"support@{DOMAIN}"          # the address customers email and replies come from
COMPANY_PHONE = "+14155550100"                 # the number customers call and text
FACEBOOK_PAGE_ID = "104729384756102"

DEFAULT_API_EMAIL = f"api-user@{DOMAIN}"       # the API user (Basic auth user name)
DEFAULT_API_TOKEN = "demo-token"
NOPERM_EMAIL = f"noperm@{DOMAIN}"              # an agent without the API User permission: 403
NOPERM_TOKEN = "noperm-token"
