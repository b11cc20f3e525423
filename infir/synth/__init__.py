"""infir.synth"""
