"""Operators for retry tests: the task commits its outputs, then its worker is lost."""


def fail_first_try_after(operator_class):
    """A subclass whose first try raises after ``execute`` returned (after every commit)."""

    class CommitThenFail(operator_class):
        def execute(self, context):
            result = super().execute(context)
            if context["ti"].try_number == 1:
                raise RuntimeError("worker lost after the commit (simulated)")
            return result

    CommitThenFail.__name__ = f"{operator_class.__name__}ThenFailOnce"
    return CommitThenFail
