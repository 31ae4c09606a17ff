"""Pure renderers: model values in, exact configuration text (or argv) out."""
