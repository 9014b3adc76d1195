"""Evaluation protocols: AVA v2.2 frame-mAP, UCF101-24 / JHMDB frame-mAP and video-mAP.

This subpackage is a numpy library: it never imports torch, so the evaluators run anywhere.
"""
