# Sourced by scripts/services/*.sh: install a missing server from Debian's packages.
# apt_install_or_explain SCRIPT WHAT PKG... -- as root with apt-get: install PKG...;
# otherwise print the exact command to run and exit 1.
apt_install_or_explain() {
    local script="$1" what="$2"
    shift 2
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "$script: $what not installed; installing it with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
    else
        echo "$script: $what is not installed. Run as root:" >&2
        echo "  sudo apt-get update && sudo apt-get install -y $*" >&2
        exit 1
    fi
}
