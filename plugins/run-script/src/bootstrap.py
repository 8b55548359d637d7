# Octo's run-script Python bootstrap, run as `python3 -u -c <this file>`.
#
# Standard input carries the script and the deployment variables, so neither is ever written to a
# file or put on a command line: the first line is the script body, every further line one variable
# `NAME VALUE`, each base64 of its UTF-8 bytes. The script then runs with the helper functions of
# Octopus's Python steps as globals (get_octopusvariable, set_octopusvariable, createartifact,
# failstep, printverbose, printhighlight, printwait, printwarning, updateprogress, and the
# `octopusvariables` dictionary), like Calamari's configuration module hands them over.
#
# Failures: the script's own exit code passes through; `failstep` and an exception escaping the
# script (a syntax error included) print a `resultMessage` service message with one line saying
# what happened, and exit with code 1.
import base64 as __octo_base64
import os as __octo_os
import sys as __octo_sys


def __octo_main():
    import linecache
    import traceback

    base64, os, sys = __octo_base64, __octo_os, __octo_sys
    script_name = "octo-script.py"
    script_path = os.path.join(os.getcwd(), script_name)

    payload = sys.stdin.buffer.read().split(b"\n")
    # The script's own standard input is empty, as for a Bash step.
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(0, "r", closefd=False)

    def decode(raw):
        return base64.b64decode(raw).decode("utf-8")

    body = decode(payload[0]) if payload and payload[0] else ""
    octopusvariables = {}
    for line in payload[1:]:
        if line:
            name, _, value = line.partition(b" ")
            octopusvariables[decode(name)] = decode(value)

    def encode(value):
        return base64.b64encode(str(value).encode("utf-8")).decode("ascii")

    def result_message(text):
        text = " ".join(str(text).split())
        print("##octopus[resultMessage message='{0}']".format(encode(text)), flush=True)

    def get_octopusvariable(name):
        return octopusvariables[name]

    def set_octopusvariable(name, value, sensitive=False):
        octopusvariables[name] = value
        if sensitive:
            print(
                "##octopus[setVariable name='{0}' value='{1}' sensitive='{2}']".format(
                    encode(name), encode(value), encode("True")
                )
            )
        else:
            print("##octopus[setVariable name='{0}' value='{1}']".format(encode(name), encode(value)))

    def createartifact(path, name=None):
        path = os.path.abspath(path)
        if name is None:
            name = os.path.basename(path)
        print("##octopus[createArtifact path='{0}' name='{1}']".format(encode(path), encode(name)))

    def updateprogress(progress, message=""):
        print(
            "##octopus[progress percentage='{0}' message='{1}']".format(
                encode(progress), encode(message)
            )
        )

    def failstep(message=None):
        if message is not None:
            result_message(message)
        sys.exit(1)

    def write(level, message):
        print("##octopus[stdout-{0}]".format(level))
        print(message)
        print("##octopus[stdout-default]")

    def printverbose(message):
        write("verbose", message)

    def printhighlight(message):
        write("highlight", message)

    def printwait(message):
        write("wait", message)

    def printwarning(message):
        write("warning", message)

    helpers = [
        get_octopusvariable, set_octopusvariable, createartifact, updateprogress, failstep,
        printverbose, printhighlight, printwait, printwarning,
    ]
    for helper in helpers:
        helper.__qualname__ = helper.__name__  # messages say `failstep()`, not `__octo_main.<locals>...`
    scope = {
        "__name__": "__main__",
        "__file__": script_path,
        "__builtins__": __builtins__,
        # Calamari's configuration module imports these, and scripts use them without importing.
        "base64": base64,
        "os": os,
        "sys": sys,
        "octopusvariables": octopusvariables,
    }
    scope.update((helper.__name__, helper) for helper in helpers)
    sys.argv = [script_path]
    sys.path[0] = os.getcwd()
    lines = body.splitlines(keepends=True)
    # Tracebacks show the script's lines although it is not a file.
    linecache.cache[script_name] = (len(body), None, lines, script_name)

    try:
        code = compile(body, script_name, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
        result_message("the Python script does not compile: {0}: {1}".format(type(e).__name__, e))
        sys.exit(1)
    try:
        exec(code, scope)
    except SystemExit:
        raise
    except BaseException as e:
        tb = e.__traceback__.tb_next  # the first frame is this bootstrap's exec
        traceback.print_exception(type(e), e, tb)
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == script_name:
                line = tb.tb_lineno
            tb = tb.tb_next
        where = " ({0}, line {1})".format(script_name, line) if line is not None else ""
        text = "{0}: {1}".format(type(e).__name__, e) if str(e) else type(e).__name__
        result_message("the Python script raised {0}{1}".format(text, where))
        sys.exit(1)


__octo_main()
