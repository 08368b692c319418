"""Tests of hfseg.io: reading and writing medical image files."""
