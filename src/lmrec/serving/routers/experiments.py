"""Online experiments: create, list, read (per-arm metrics with intervals and tests) and stop them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from lmrec.evaluation.abtest import NAME_PATTERN, Arm, ExperimentError, ExperimentSpec
from lmrec.serving.deps import AdminAccess, EngineDep, GuardedRoute, audit_of
from lmrec.serving.errors import InvalidRequestError, NotFoundError
from lmrec.serving.schemas import ERRORS, ExperimentIn, ExperimentOut, ExperimentReportOut

router = APIRouter(route_class=GuardedRoute, prefix="/v1/admin/experiments", tags=["admin"], responses=ERRORS)

Name = Annotated[str, Path(pattern=NAME_PATTERN, description="The experiment's name.")]


@router.get("", response_model=list[ExperimentOut], summary="Experiments, oldest first")
def list_experiments(engine: EngineDep, _: AdminAccess) -> list[ExperimentOut]:
    return [ExperimentOut.of(r) for r in engine.experiments.table.list()]


@router.post("", response_model=ExperimentOut, status_code=201,
             summary="Start an experiment: users are bucketed into its arms from the next request")
def create_experiment(body: ExperimentIn, request: Request, engine: EngineDep,
                      _: AdminAccess) -> ExperimentOut:
    if (entry := audit_of(request)) is not None:
        entry.target = body.name
    try:
        spec = ExperimentSpec(body.name, tuple(Arm(a.name, a.version, a.share) for a in body.arms),
                              salt=body.salt, window_s=body.window_s, alpha=body.alpha,
                              description=body.description)
    except ExperimentError as exc:
        raise InvalidRequestError(str(exc)) from None
    try:
        record = engine.experiments.create(spec)
    except NotFoundError as exc:  # an arm names a version the registry does not have
        raise InvalidRequestError(exc.message) from None
    except ValueError as exc:  # the name is taken
        raise InvalidRequestError(str(exc)) from None
    return ExperimentOut.of(record)


@router.get("/{name}", response_model=ExperimentReportOut,
            summary="An experiment with per-arm metrics, intervals and tests against the control")
def read_experiment(name: Name, engine: EngineDep, _: AdminAccess) -> ExperimentReportOut:
    return ExperimentReportOut.of_report(engine.experiments.report(name))


@router.post("/{name}/stop", response_model=ExperimentOut,
             summary="Stop an experiment: its users get the active model from the next request")
def stop_experiment(name: Name, request: Request, engine: EngineDep, _: AdminAccess) -> ExperimentOut:
    if (entry := audit_of(request)) is not None:
        entry.target = name
    return ExperimentOut.of(engine.experiments.stop(name))
