"""Tests of the HTTP service (`melcnn serve`) and its web page."""
