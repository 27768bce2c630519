"""Generated from protos/ by scripts/proto.sh: do not edit."""
