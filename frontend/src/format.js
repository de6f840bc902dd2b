// How the page writes times and durations: in the browser's zone and language, and in the unit
// that fits (22 ms, 1.4 s, 3 min), never as a raw timestamp.

const sameDay = (a, b) => a.toDateString() === b.toDateString()

// A moment: "14:03:07" today, "2 Dec, 14:03" another day; epoch seconds or an ISO string.
export function when(at) {
  if (at === null || at === undefined || at === '') return '—'
  const date = typeof at === 'number' ? new Date(at * 1000) : new Date(at)
  if (Number.isNaN(date.getTime())) return String(at)
  if (sameDay(date, new Date())) return date.toLocaleTimeString()
  return date.toLocaleString(undefined, { day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit' })
}

// A duration given in seconds.
export function duration(secs) {
  if (secs === null || secs === undefined) return '—'
  const s = Number(secs)
  if (s < 1) return `${Math.round(s * 1000)} ms`
  if (s < 120) return `${s.toFixed(1)} s`
  if (s < 7200) return `${Math.round(s / 60)} min`
  if (s < 172800) return `${Math.round(s / 3600)} h`
  return `${Math.round(s / 86400)} days`
}

// An id or a kind as words: "no_answer" → "no answer", "sms.sent" → "sms sent".
export const words = (id) => String(id ?? '').replaceAll(/[_.]/g, ' ')

// A CRM cell as text: a list joined, yes/no, a timestamp as a moment, anything else as it reads.
export function cell(value) {
  if (Array.isArray(value)) return value.join(', ')
  if (typeof value === 'boolean') return value ? 'Yes' : 'No'
  if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(value)) return when(value)
  return String(value)
}
