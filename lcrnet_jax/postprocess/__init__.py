"""From network outputs to people (LCR-Net++ Sec. 3.6).

`candidates`: per-RoI outputs -> flat pose candidates; `rescoring`: Eq. 6; `ppi`: pose
proposal integration (Eq. 7-8); `nms_baseline`: the top candidate of each region;
`detect`: candidates then PPI or NMS over a batch.
"""
