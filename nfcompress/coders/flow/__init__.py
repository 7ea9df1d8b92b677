"""The integer discrete flow as a `Coder` (`coder`), its tiling (`tiles`) and orientations
(`orientation`); the network itself is nfcompress.flows. `FlowCoder` imports torch: it is loaded
on first use, so that the efforts and the tiling can be read without it."""

__all__ = ["FlowCoder"]


def __getattr__(name: str):
    if name == "FlowCoder":
        from nfcompress.coders.flow.coder import FlowCoder

        return FlowCoder
    raise AttributeError(f"module 'nfcompress.coders.flow' has no attribute {name!r}")
