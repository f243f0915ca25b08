#!/bin/bash
# Build the RPM from this source tree with Debian's rpmbuild into dist/ and check it with
# rpmlint. On Fedora or EL, build packaging/rpm/ecr-agent.spec natively instead, for
# example with `rpmbuild -ba` and the tarball this script leaves in build/rpm/SOURCES.
#
# NOTE: the modules land in /usr/lib/python3.X/site-packages for the X of Debian's
# python3 (3.11 on Debian 12), so this RPM only suits a distribution with that python3.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

version=$(upstream_version)
spec=$ROOT/packaging/rpm/ecr-agent.spec
spec_version=$(sed -n 's/^Version:[[:space:]]*//p' "$spec")
if [ "$spec_version" != "$version" ]; then
	die "packaging/rpm/ecr-agent.spec has Version: $spec_version, but" \
		"ecr_agent/__init__.py has $version: update Version, Release and %changelog"
fi
changelog_version=$(sed -n '/^%changelog/{n;s/.* - \([^-]*\)-[^-]*$/\1/p;q}' "$spec")
if [ "$changelog_version" != "$version" ]; then
	die "the first %changelog entry of packaging/rpm/ecr-agent.spec is for" \
		"$changelog_version, but ecr_agent/__init__.py has $version"
fi

# python3-build and python3-installer are what the spec's fallback macros run.
require_packages rpm rpmlint python3-build python3-installer python3-setuptools

topdir=$BUILD/rpm
rm -rf "$topdir"
mkdir -p "$topdir"/{SOURCES,SPECS,BUILD,BUILDROOT,RPMS,SRPMS}
copy_source "$topdir/tarball/ecr-agent-$version"
set_source_date
tar -C "$topdir/tarball" --sort=name --owner=0 --group=0 --numeric-owner \
	--mtime="@$SOURCE_DATE_EPOCH" -czf "$topdir/SOURCES/ecr-agent-$version.tar.gz" \
	"ecr-agent-$version"
cp "$spec" "$topdir/SPECS/"

# --nodeps: Debian's rpm database is empty, so no BuildRequires can be satisfied.
# Debian's brp-compress is a bash script without a shebang that /bin/sh cannot run.
echo "Building ecr-agent $version RPM in $topdir"
env -u VIRTUAL_ENV -u PYTHONPATH -u PYTHONHOME PATH="$SYSTEM_PATH" \
	rpmbuild -bb --nodeps \
	--define "_topdir $topdir" \
	--define "__brp_compress /bin/bash /usr/lib/rpm/brp-compress %{?_prefix}" \
	"$topdir/SPECS/ecr-agent.spec"

rpm=$(ls "$topdir"/RPMS/noarch/ecr-agent-"$version"-*.noarch.rpm)

echo "Running rpmlint"
rpmlint --config "$ROOT/packaging/rpm/rpmlint.toml" "$spec" "$rpm" | tee "$topdir/rpmlint.txt"

mkdir -p "$DIST"
cp "$rpm" "$DIST/"
echo "Built $DIST/$(basename "$rpm") ($(stat -c %s "$rpm") bytes)"
