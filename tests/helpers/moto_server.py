"""Run moto as a real HTTP server on 127.0.0.1 (``python -m tests.helpers.moto_server PORT``).

Single-threaded on purpose: moto checks ``If-None-Match``/``If-Match`` and then writes in two
steps, so on a threaded server two racing conditional PUTs could both pass. Real S3 (and
MinIO) evaluate the condition atomically; serving one request at a time gives the emulation
the same atomicity, which the concurrency tests rely on.

SageMaker compute cannot run here, so it is emulated: new training jobs start ``InProgress``
(moto would report them ``Completed`` at once), and ``POST /_mlcrit/training-job`` with JSON
``{"name", "status", "reason"}`` moves a job on, as SageMaker's own instances would. moto has no
``StopTrainingJob``: the emulation answers it as SageMaker does (the job ends ``Stopped``).
"""

from __future__ import annotations

import io
import json
import sys

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

ACCOUNT, REGION = "123456789012", "us-east-1"


def _jobs():
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[ACCOUNT][REGION].training_jobs


def app_with_emulation(app):
    def wrapped(environ, start_response):
        request = Request(environ)
        if request.path == "/_mlcrit/training-job" and request.method == "POST":
            body = json.loads(request.get_data())
            job = _jobs()[body["name"]]
            job.training_job_status = job.secondary_status = body["status"]
            if body.get("reason"):
                job.failure_reason = body["reason"]
            return Response("ok")(environ, start_response)
        target = request.headers.get("X-Amz-Target", "")
        if target.endswith("StopTrainingJob"):
            job = _jobs().get(json.loads(request.get_data()).get("TrainingJobName"))
            if job is None:
                return Response('{"__type": "ValidationException", "message": "Requested resource not found."}', 400)(
                    environ, start_response
                )
            job.training_job_status, job.secondary_status = "Stopped", "Stopped"
            return Response("{}", 200, content_type="application/x-amz-json-1.1")(environ, start_response)
        if target.endswith("CreateTrainingJob"):
            raw = request.get_data()
            environ["wsgi.input"] = io.BytesIO(raw)  # the request body was consumed above: hand it on
            body = json.loads(raw)
            result = app(environ, start_response)
            job = _jobs().get(body.get("TrainingJobName"))
            if job is not None:
                job.training_job_status = job.secondary_status = "InProgress"
            return result
        return app(environ, start_response)

    return wrapped


def main() -> None:
    port = int(sys.argv[1])
    app = app_with_emulation(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=False)
    print(f"moto listening on 127.0.0.1:{server.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
