"""The billing PDFs: Django templates (templates/billing/) rendered by xhtml2pdf.

`billing.pdf.renderer.XhtmlPdfRenderer` implements `billing.rendering.BillingPdfRenderer`.
Figures come from the stored records only; this package formats them, never computes money.
"""
