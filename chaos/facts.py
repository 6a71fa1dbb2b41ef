"""What the checks judge, gathered after quiescence: the processor's own lists (charges,
refunds, disputes: the truth), our charges and balances as the API shows them, the ledger
check's verdict, and what every caller was finally answered."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from chaos.processes import GATEWAY

Json = dict[str, Any]
_PAGE = 100


@dataclass
class Facts:
    processor_charges: list[Json] = field(default_factory=list)
    processor_refunds: list[Json] = field(default_factory=list)
    processor_disputes: list[Json] = field(default_factory=list)
    our_charges: list[Json] = field(default_factory=list)
    balances: dict[str, str] = field(default_factory=dict)  # account -> decimal string
    requests: list[Json] = field(default_factory=list)  # Request.as_fact() of every request
    ledger_balanced: bool = True
    ledger_report: Json = field(default_factory=dict)

    def as_dict(self) -> Json:
        return asdict(self)


async def _all_pages(http: httpx.AsyncClient, path: str, params: dict[str, str]) -> list[Json]:
    found: list[Json] = []
    after: str | None = None
    while True:
        query = {**params, "limit": str(_PAGE), **({"starting_after": after} if after else {})}
        response = await http.get(path, params=query)
        response.raise_for_status()
        page = response.json()
        found.extend(page["data"])
        if not page["has_more"] or not page["data"]:
            return found
        after = page["data"][-1]["id"]


async def at_processor(sandbox_url: str) -> tuple[list[Json], list[Json], list[Json]]:
    """The processor's charges, refunds and disputes: all of them."""
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30.0) as http:
        return (
            await _all_pages(http, "/v1/charges", {}),
            await _all_pages(http, "/v1/refunds", {}),
            await _all_pages(http, "/v1/disputes", {}),
        )


async def ours(
    api_url: str, api_key: str, accounts: list[str]
) -> tuple[list[Json], dict[str, str]]:
    """Our charges of every account, and every account's balance."""
    headers = {"Authorization": f"Bearer {api_key}"}
    charges: list[Json] = []
    balances: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30.0) as http:
        for account in accounts:
            charges.extend(await _all_pages(http, "/v1/charges", {"account_id": account}))
            response = await http.get(f"/v1/accounts/{account}")
            response.raise_for_status()
            balances[account] = response.json()["balance"]
    return charges, balances


async def run_command(env: dict[str, str], *argv: str) -> tuple[int, str]:
    """A `gateway` operator command; its exit status and standard output."""
    process = await asyncio.create_subprocess_exec(
        GATEWAY, *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode(errors="replace")
