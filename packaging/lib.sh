# Functions shared by build-deb.sh and build-rpm.sh, which source this file.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# ECR_AGENT_BUILD_DIR and ECR_AGENT_DIST_DIR move the build tree and the output, so
# that tests can build without touching build/ and dist/.
BUILD=${ECR_AGENT_BUILD_DIR:-$ROOT/build}
DIST=${ECR_AGENT_DIST_DIR:-$ROOT/dist}
# Debian's tools, not pyenv shims or a virtualenv: pybuild and rpmbuild must run the
# system python3 that has Debian's modules.
SYSTEM_PATH=/usr/sbin:/usr/bin:/sbin:/bin

die() {
	echo "$(basename "$0"): $*" >&2
	exit 1
}

# Print __version__ from ecr_agent/__init__.py, the one place the version is set.
upstream_version() {
	local version
	version=$(sed -n 's/^__version__ = "\([^"]*\)"$/\1/p' "$ROOT/ecr_agent/__init__.py")
	[ -n "$version" ] || die "no __version__ = \"...\" line in ecr_agent/__init__.py"
	echo "$version"
}

# Install the missing Debian packages when running as root. Otherwise print the
# apt-get command that installs them, and fail.
require_packages() {
	local missing=() package
	command -v dpkg-query >/dev/null || die "dpkg-query not found: this script needs Debian or Ubuntu"
	for package in "$@"; do
		if [ "$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null)" != installed ]; then
			missing+=("$package")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		die "missing build tools: run sudo apt-get install ${missing[*]}"
	fi
	echo "Installing ${missing[*]}"
	# The lock timeout waits for another apt-get or unattended-upgrades to finish.
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y \
		--no-install-recommends "${missing[@]}"
}

# Copy the source tree (tracked and new files, not ignored ones) into $1.
copy_source() {
	local dest=$1
	mkdir -p "$dest"
	if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		# --cached plus --others lists the working tree's files, including those not yet
		# committed. A deleted tracked file is skipped because tar cannot read it.
		git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
			(cd "$ROOT" && xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
			tar -C "$ROOT" --null -T - -cf - | tar -C "$dest" -xf -
	else
		tar -C "$ROOT" --exclude=./build --exclude=./dist --exclude='./.venv*' \
			--exclude=.git --exclude=__pycache__ -cf - . | tar -C "$dest" -xf -
	fi
}

# Set SOURCE_DATE_EPOCH from the last commit so that the man pages' dates are
# reproducible. Outside git, use the current time.
set_source_date() {
	if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
		SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
		export SOURCE_DATE_EPOCH
	fi
}
