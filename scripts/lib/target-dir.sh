# Sourced by the scripts: sets $target_dir to where cargo puts its build output. Honours
# CARGO_TARGET_DIR (a relative one is taken from the directory the script was started in, as
# cargo would) and `build.target-dir` of cargo's config, by asking cargo itself.
# Call before the script changes directory, with the repository root as $1.
slipway_target_dir() {
  local root=$1
  if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    case "$CARGO_TARGET_DIR" in
      /*) ;;
      *) CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR" ;;
    esac
    export CARGO_TARGET_DIR
  fi
  target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps --offline 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  if [ -z "$target_dir" ]; then target_dir="${CARGO_TARGET_DIR:-$root/target}"; fi
}
