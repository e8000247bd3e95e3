"""LAION-CLAP checkpoints in transformers: conversion, parity with the original `laion_clap` code, sanity checks."""
