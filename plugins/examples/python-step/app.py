"""A custom Octo step written in Python (componentize-py)."""
import wit_world
from wit_world.imports import log, variables, octo_plugin_types as t
from componentize_py_types import Err


class WitWorld(wit_world.WitWorld):
    def describe(self) -> t.StepDescription:
        return t.StepDescription(
            name="Python greeter",
            description="Greets someone from Python",
            parameters=[t.Parameter(name="name", label="Name", help_text="", default_value="world",
                                    required=False, sensitive=False)],
        )

    def run(self, arguments):
        args = {a.name: a.value for a in arguments}
        if args.get("name") == "fail":
            raise Err("asked to fail")
        log.write(log.Level.INFO, f"Hello from Python, {args['name']}!")
        variables.set_output("PyGreeting", f"Hello, {args['name']}", False)
