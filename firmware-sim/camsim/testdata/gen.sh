#!/bin/sh
# Regenerates the committed camsim clips (run once; the outputs are committed).
# testsrc, 640x360, 15 fps, 1 s GOP, 3 s, no B-frames, parameter sets before every keyframe.
set -e
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc=size=640x360:rate=15 -t 3 \
  -c:v libx264 -pix_fmt yuv420p -profile:v baseline -g 15 -keyint_min 15 -sc_threshold 0 -bf 0 \
  -x264-params repeat-headers=1 -f h264 clip.h264
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc=size=640x360:rate=15 -t 3 \
  -c:v libx265 -pix_fmt yuv420p \
  -x265-params keyint=15:min-keyint=15:scenecut=0:bframes=0:repeat-headers=1:log-level=error -f hevc clip.h265
