"""Tests build images with the same builder the demo uses: stowaway.ingest.imagebuilder."""
from stowaway.ingest.imagebuilder import *  # noqa: F401,F403
from stowaway.ingest.imagebuilder import WHITEOUT, Device, Dir, File, Hardlink, ImageBuilder, Symlink, layer_tar, sha256  # noqa: F401
