#!/bin/bash
# Build the Debian package from this source tree into dist/ and check it with lintian.
#
#   ECR_AGENT_DEB_REVISION=N  build Debian revision N of the same upstream version
#                             (default: the revision in packaging/debian/changelog),
#                             for example to test an upgrade
set -euo pipefail
. "$(dirname "$0")/lib.sh"

version=$(upstream_version)
changelog=$ROOT/packaging/debian/changelog
changelog_version=$(sed -n '1s/^ecr-agent (\([^)]*\)).*/\1/p' "$changelog")
if [ "${changelog_version%-*}" != "$version" ]; then
	die "packaging/debian/changelog starts with ${changelog_version:-no ecr-agent entry}," \
		"but ecr_agent/__init__.py has $version: add an entry for $version-1"
fi

require_packages dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all \
	python3-setuptools lintian

# dpkg-buildpackage writes the packages next to the source tree.
out=$BUILD/deb
tree=$out/ecr-agent-$version
rm -rf "$out"
copy_source "$tree"
rm -rf "$tree/debian"
cp -a "$ROOT/packaging/debian" "$tree/debian"

# A revision other than the changelog's gets an entry of its own in the build tree.
revision=${ECR_AGENT_DEB_REVISION:-}
if [ -n "$revision" ] && [ "$version-$revision" != "$changelog_version" ]; then
	maintainer=$(dpkg-parsechangelog -l "$changelog" -S Maintainer)
	{
		printf 'ecr-agent (%s) unstable; urgency=medium\n\n' "$version-$revision"
		printf '  * Rebuild of %s as revision %s.\n\n' "$version" "$revision"
		printf ' -- %s  %s\n\n' "$maintainer" "$(date -R)"
		cat "$changelog"
	} >"$tree/debian/changelog"
fi
deb_version=$(dpkg-parsechangelog -l "$tree/debian/changelog" -S Version)

echo "Building ecr-agent $deb_version in $tree"
(cd "$tree" && env -u VIRTUAL_ENV -u PYTHONPATH -u PYTHONHOME PATH="$SYSTEM_PATH" \
	dpkg-buildpackage -us -uc -b)

deb=$out/ecr-agent_${deb_version}_all.deb
changes=$out/ecr-agent_${deb_version}_amd64.changes
[ -f "$changes" ] || changes=$(ls "$out"/ecr-agent_"${deb_version}"_*.changes)

echo "Running lintian"
# Overridden tags are listed too, as "O:" lines after their comment in "N:" lines.
# --fail-on would count them as well, so grep finds the errors and warnings.
lintian --display-info --show-overrides --fail-on none "$changes" | tee "$out/lintian.txt"
if grep -q '^[EW]: ' "$out/lintian.txt"; then
	die "lintian reported errors or warnings, listed above and in $out/lintian.txt"
fi

mkdir -p "$DIST"
cp "$deb" "$DIST/"
echo "Built $DIST/$(basename "$deb") ($(stat -c %s "$deb") bytes)"
