"""LSP and LSP-extended; importing this package registers the `lsp` TFDS builder."""

from data_builders.lsp.lsp_dataset_builder import Lsp

__all__ = ["Lsp"]
