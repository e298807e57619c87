"""Recipe discovery route (CONTRACT.md §3.16)."""

from __future__ import annotations

import math

from astropy.time import Time
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.discovery.models import SuggestRecipesRequest, SuggestRecipesResponse
from app.discovery.recipe_engine import suggest_recipes
from app.errors import BadRequest
from app.http_errors import error_responses, route

router = APIRouter(prefix="/discovery", tags=["Discovery"])


@route(router.post, "/suggest-recipes", SuggestRecipesResponse, error_responses(400, 422))
async def suggest(body: SuggestRecipesRequest):
    """Suggest colour-composite recipes.

    Recipes for a target's observations, in the order the browser shows them (the
    first is "Recommended"): curated press-release colour assignments for well-known
    targets, recipes across instruments, then each instrument's (all filters, classic
    three colours, narrowband, broadband), each with the colours by wavelength, whether
    its observations need a mosaic first (pointings more than 10" apart in one filter) and
    a warning when its filters do not cover the same sky. Spectra and observations not yet
    public are left out. A target name without observations answers its target and no
    recipes. The work grows as n log n with the number of observations and runs off the
    event loop."""
    target = {"name": body.target_name} if body.target_name else None
    if not body.observations:
        if target is None:
            raise BadRequest("observations list is required (or a target_name)")
        return {"target": target, "recipes": []}
    recipes = await run_in_threadpool(
        suggest_recipes,
        body.target_name,
        [o.model_dump() for o in body.observations],
        math.floor(Time.now().mjd),
    )
    return {"target": target, "recipes": recipes}
