#!/usr/bin/python3
"""Install a wheel into an RPM build root with the Fedora layout, for rpmbuild without
pyproject-rpm-macros (Debian's rpm package).

Fedora's %pyproject_install does the same with its own paths. `python3 -m installer`
cannot be used here because Debian's Python puts packages under dist-packages.
"""

import argparse
import sys

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", help="the wheel file to install")
    parser.add_argument("--destdir", required=True, help="the build root")
    parser.add_argument(
        "--sitelib",
        required=True,
        help="directory for pure-Python modules, such as /usr/lib/python3.11/site-packages",
    )
    parser.add_argument("--bindir", required=True, help="directory of the console scripts")
    parser.add_argument("--datadir", required=True, help="prefix of the wheel's data files")
    parser.add_argument(
        "--interpreter",
        required=True,
        help="interpreter named in the console scripts' shebang line",
    )
    args = parser.parse_args(argv)

    scheme = {
        "purelib": args.sitelib,
        "platlib": args.sitelib,
        "scripts": args.bindir,
        "data": args.datadir,
        "headers": f"{args.datadir}/include/python",
    }
    destination = SchemeDictionaryDestination(
        scheme,
        interpreter=args.interpreter,
        script_kind="posix",
        bytecode_optimization_levels=(0, 1),
        destdir=args.destdir,
    )
    with WheelFile.open(args.wheel) as source:
        install(source, destination, additional_metadata={"INSTALLER": b"rpm\n"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
