// Small inline icons (no icon font, no extra request).
type P = { size?: number; className?: string; title?: string }

function svg(path: React.ReactNode, { size = 20, className, title }: P, viewBox = '0 0 24 24') {
  return (
    <svg width={size} height={size} viewBox={viewBox} className={className} aria-hidden={title ? undefined : true} role={title ? 'img' : undefined} fill="none" stroke="currentColor" strokeWidth={2} strokeLinecap="round" strokeLinejoin="round">
      {title && <title>{title}</title>}
      {path}
    </svg>
  )
}

export const SendIcon = (p: P) => svg(<path d="M4 12 20 4l-6 16-3-7-7-1z" fill="currentColor" stroke="none" />, p)
export const BackIcon = (p: P) => svg(<path d="M15 18l-6-6 6-6" />, p)
export const ComposeIcon = (p: P) => svg(<><path d="M12 20h9" /><path d="M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z" /></>, p)
export const GroupIcon = (p: P) => svg(<><circle cx="9" cy="8" r="3.5" /><path d="M2.5 20a6.5 6.5 0 0 1 13 0" /><path d="M16 4.5a3.5 3.5 0 0 1 0 7" /><path d="M18 14.2A6.5 6.5 0 0 1 21.5 20" /></>, p)
export const SearchIcon = (p: P) => svg(<><circle cx="11" cy="11" r="7" /><path d="m20 20-3.5-3.5" /></>, p)
export const LogoutIcon = (p: P) => svg(<><path d="M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4" /><path d="M16 17l5-5-5-5" /><path d="M21 12H9" /></>, p)
export const InfoIcon = (p: P) => svg(<><circle cx="12" cy="12" r="9" /><path d="M12 16v-5" /><path d="M12 8h.01" /></>, p)
export const CloseIcon = (p: P) => svg(<path d="M18 6 6 18M6 6l12 12" />, p)
export const DownIcon = (p: P) => svg(<path d="m6 9 6 6 6-6" />, p)

/** Message ticks: clock (not yet stored), ✓ stored, ✓✓ delivered, blue ✓✓ read, ! failed. */
export function Ticks({ status }: { status?: string }) {
  switch (status) {
    case 'queued':
    case 'sending':
      return svg(<><circle cx="12" cy="12" r="8" /><path d="M12 8v4l2.5 2" /></>, { size: 14, className: 'tick pending', title: 'Sending' })
    case 'sent':
      return svg(<path d="M4 12.5 9 17.5 20 6.5" />, { size: 16, className: 'tick sent', title: 'Sent' })
    case 'delivered':
    case 'read':
      return (
        <svg width={20} height={16} viewBox="0 0 30 24" className={`tick ${status}`} role="img" fill="none" stroke="currentColor" strokeWidth={2.2} strokeLinecap="round" strokeLinejoin="round">
          <title>{status === 'read' ? 'Read' : 'Delivered'}</title>
          <path d="M2 12.5 7.5 18 18.5 6.5" />
          <path d="M13 17 14 18 25 6.5" />
        </svg>
      )
    case 'failed':
      return svg(<><circle cx="12" cy="12" r="9" /><path d="M12 7.5v5.5" /><path d="M12 16.5h.01" /></>, { size: 16, className: 'tick failed', title: 'Not sent' })
  }
  return null
}
