"""Element sources that run inside the guest: AT-SPI, Tk introspection, OCR."""
