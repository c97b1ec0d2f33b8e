#!/bin/sh
# /opt/apache/beam/boot in an image built with BEAM_BOOT=none (images/Dockerfile): Beam's Go
# boot program could neither be pulled (Beam's SDK image) nor built (scripts/beam_boot.sh: no Go
# or no Go module proxy), so only its --worker_pool role is served, the way boot serves it (the
# SDK worker pool on port 50000); workers it starts are plain Python processes.
case " $* " in
  *" --worker_pool "* | *" --worker_pool=true "*)
    exec python -m apache_beam.runners.worker.worker_pool_main --service_port=50000 ;;
esac
echo "boot: this image was built with BEAM_BOOT=none (no Beam boot program); only --worker_pool is served" >&2
exit 2
