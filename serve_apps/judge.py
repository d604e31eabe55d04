"""Builders of the judge application: Gateway (HTTP ingress at `/`) bound to the Judge deployment.

`build_gateway_app` deploys the gateway alone; it then finds the judge by name (app `judge`) at request time,
which lets a judge be redeployed without touching the HTTP layer, and lets the model routes work before the
judge is up.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from armed.serving.config import deployment_options
from armed.serving.profiles import resolve_profile
from deployments.judge import Gateway, JudgeArgs, JudgeDeployment


def build_judge_app(args: dict[str, Any]) -> Application:
    a = JudgeArgs.model_validate(args)
    profile = resolve_profile(a.profile)
    judge = JudgeDeployment.options(**deployment_options(profile, "judge")).bind(a.model_dump())
    return Gateway.options(**deployment_options(profile, "gateway")).bind(a.model_dump(), judge)


def build_gateway_app(args: dict[str, Any]) -> Application:
    a = JudgeArgs.model_validate(args)
    profile = resolve_profile(a.profile)
    return Gateway.options(**deployment_options(profile, "gateway")).bind(a.model_dump())
