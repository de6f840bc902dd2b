// The admin page in a real browser (Debian's Chromium through playwright-core) against a real
// `leadq all` serving the built page, with a real nats-server. Screenshots of every page are kept
// in e2e/output/ (or $LEADQ_E2E_OUT).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { chromium } from 'playwright-core'

const root = resolve(import.meta.dirname, '..', '..')
const leadq = process.env.LEADQ_BIN || join(process.env.CARGO_TARGET_DIR || join(root, 'target'), 'debug', 'leadq')
const natsServer = process.env.LEADQ_NATS_SERVER || join(process.env.HOME, '.cache/leadq/nats-venv/bin/nats-server')
const chromiumPath = process.env.LEADQ_CHROMIUM || '/usr/bin/chromium'
const out = process.env.LEADQ_E2E_OUT || join(import.meta.dirname, 'output')
const password = `Pw-${Math.random().toString(36).slice(2)}-${Date.now()}`
const secret = `sk_e2e_${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`

const children = []
let base, browser, work, logs = ''

function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer()
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => ok(port))
    })
    server.on('error', fail)
  })
}

async function until(what, check, ms = 30000) {
  const end = Date.now() + ms
  for (;;) {
    try { if (await check()) return } catch { /* not yet */ }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'leadq-e2e-'))
  mkdirSync(out, { recursive: true })
  const natsPort = await freePort()
  const httpPort = await freePort()
  const nats = spawn(natsServer, ['-a', '127.0.0.1', '-p', String(natsPort), '-js', '-sd', join(work, 'nats')], { stdio: 'ignore' })
  children.push(nats)
  const env = {
    ...process.env,
    LEADQ_NATS_URL: `nats://127.0.0.1:${natsPort}`,
    LEADQ_DATA_DIR: join(work, 'data'),
    LEADQ_HTTP_ADDR: `127.0.0.1:${httpPort}`,
    LEADQ_ADMIN__FRONTEND_DIR: join(root, 'frontend', 'dist'),
    LEADQ_LOG_FORMAT: 'json',
  }
  await until('nats-server', () => spawnSync(leadq, ['setup'], { env }).status === 0)
  const agent = spawn(leadq, ['all'], { env })
  agent.stdout.on('data', (d) => { logs += d })
  agent.stderr.on('data', (d) => { logs += d })
  children.push(agent)
  base = `http://127.0.0.1:${httpPort}`
  await until('leadq /readyz', async () => (await fetch(`${base}/readyz`)).ok)
  const made = spawnSync(leadq, ['admin', 'create-user', '--username', 'e2e-admin', '--role', 'admin'], { env, input: `${password}\n` })
  assert.equal(made.status, 0, String(made.stderr))
  const viewer = spawnSync(leadq, ['admin', 'create-user', '--username', 'e2e-viewer', '--role', 'viewer'], { env, input: `${password}\n` })
  assert.equal(viewer.status, 0, String(viewer.stderr))
  browser = await chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] })
})

after(async () => {
  await browser?.close()
  for (const child of children.reverse()) child.kill('SIGTERM')
  await new Promise((r) => setTimeout(r, 500))
  if (work) rmSync(work, { recursive: true, force: true })
})

async function login(page, username = 'e2e-admin') {
  await page.goto(`${base}/`)
  await page.getByTestId('login').waitFor()
  await page.fill('input[name=username]', username)
  await page.fill('input[name=password]', password)
  await page.click('button[type=submit]')
  await page.getByTestId('dashboard').waitFor()
}

test('an admin works through every page', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  const dashboard = await context.newPage()
  await dashboard.goto(`${base}/`)
  await dashboard.getByTestId('login').waitFor()
  await dashboard.screenshot({ path: join(out, '01-login.png'), fullPage: true })

  // A wrong password is told in words.
  await dashboard.fill('input[name=username]', 'e2e-admin')
  await dashboard.fill('input[name=password]', 'not the password')
  await dashboard.click('button[type=submit]')
  await dashboard.getByRole('alert').filter({ hasText: 'Wrong username or password' }).waitFor()

  await login(dashboard)
  await dashboard.getByTestId('live-state').filter({ hasText: 'live' }).waitFor()
  // A fresh install says what to do first, with the way to each step.
  const firstRun = dashboard.getByTestId('first-run')
  await firstRun.getByText('Send a test lead').waitFor()
  await firstRun.getByRole('link', { name: 'Credentials' }).waitFor()
  // Tours booked (Calendly's reports) beside the qualified figure: none yet.
  await dashboard.getByTestId('booked-today').filter({ hasText: '0 (0%)' }).waitFor()
  await dashboard.screenshot({ path: join(out, '02-dashboard.png'), fullPage: true })

  // A second tab pastes a fixture email; the first, left alone, shows the lead arriving.
  const tab = await context.newPage()
  await login(tab)
  await tab.getByTestId('nav').getByText('Test email').click()
  const email = readFileSync(join(root, 'tests/fixtures/emails/01-plain-private-office.eml'), 'utf8')
  await tab.fill('textarea[name=raw]', email)
  await tab.click('button[type=submit]')
  const result = tab.getByTestId('test-email-result')
  await result.waitFor()
  const leadId = (await result.locator('code').innerText()).trim()
  await tab.screenshot({ path: join(out, '03-test-email.png'), fullPage: true })
  const expected = JSON.parse(readFileSync(join(root, 'tests/fixtures/emails/expected.json'), 'utf8'))
  const { name, phone } = expected['01-plain-private-office.eml'].lead
  const arrivals = dashboard.getByTestId('arrivals')
  await arrivals.locator('li', { hasText: phone }).filter({ hasText: name }).waitFor({ timeout: 10000 })
  assert.ok(leadId.length > 30, `lead id shown: ${leadId}`)

  // A malformed email is refused with the reason.
  await tab.fill('textarea[name=raw]', 'Subject: hello\n\nnothing to see')
  await tab.click('button[type=submit]')
  await tab.getByTestId('test-email-error').waitFor()
  // Both submissions are listed with their outcome.
  await tab.getByTestId('recent-test-emails').getByText('not_a_lead').waitFor()
  await tab.getByTestId('recent-test-emails').getByText(`queued: ${name} ${phone}`).waitFor()

  // A Twilio credential saved is shown masked, never in full.
  await tab.getByTestId('nav').getByText('Credentials').click()
  await tab.selectOption('select[name=service]', 'twilio')
  await tab.selectOption('select[name=key]', 'auth_token')
  await tab.fill('input[name=value]', secret)
  await tab.click('button[type=submit]')
  await tab.getByTestId('notice').waitFor()
  const masked = `${secret.slice(0, 4)}…${secret.slice(-4)}`
  await tab.getByTestId('credential-list').getByText(masked).waitFor()
  assert.ok(!(await tab.content()).includes(secret), 'the page never holds the plain value')
  // "Test connection" says what the service answered: here the sandbox's CRM, whose table has
  // every column; an inbox that is not configured says how to configure it.
  await tab.getByTestId('connection-airtable').getByText('Test connection').click()
  await tab.getByTestId('connection-airtable').getByTestId('connection-answer').filter({ hasText: 'has every column' }).waitFor()
  await tab.getByTestId('connection-imap').getByText('Test connection').click()
  await tab.getByTestId('connection-imap').getByTestId('connection-answer').filter({ hasText: 'LEADQ_IMAP__HOST' }).waitFor()
  await tab.screenshot({ path: join(out, '04-credentials.png'), fullPage: true })

  // Both actions are in the activity log, by this admin.
  await tab.getByTestId('nav').getByText('Activity').click()
  const log = tab.getByTestId('activity-list')
  await until('both actions in the activity log', async () => {
    await tab.getByText('Refresh').click()
    const text = await log.innerText()
    return text.includes('credential.saved') && text.includes('lead.test_email') && text.includes('e2e-admin')
  }, 15000)
  await tab.screenshot({ path: join(out, '05-activity.png'), fullPage: true })

  await tab.getByTestId('nav').getByText('Leads').click()
  await tab.getByTestId('leads').waitFor()
  await tab.screenshot({ path: join(out, '06-leads.png'), fullPage: true })
  await tab.getByTestId('nav').getByText('Settings').click()
  await tab.fill('input[name=spoken]', 'five or six of us')
  await tab.selectOption('select[name=question]', 'team_size')
  await tab.getByText('Read it').click()
  await tab.getByTestId('reading').filter({ hasText: '5–6 people' }).waitFor()
  // A rule changed on the page is saved and is what the page shows after a reload.
  await tab.fill('input[name=min_team_size]', '3')
  await tab.getByTestId('save-script').click()
  await tab.getByTestId('notice').waitFor()
  await tab.screenshot({ path: join(out, '07-settings.png'), fullPage: true })
  await tab.reload()
  await tab.getByTestId('rules').waitFor()
  assert.equal(await tab.inputValue('input[name=min_team_size]'), '3')
  // The warm transfer's roster: nobody on duty at first; a rep with a bad number is refused
  // with the reason; a good one is saved (number read into E.164) and is on duty after a reload.
  await tab.getByTestId('on-duty').filter({ hasText: 'Nobody is on duty' }).waitFor()
  await tab.getByTestId('add-rep').click()
  await tab.fill('input[name=rep-name-0]', 'Sam Rivera')
  await tab.fill('input[name=rep-phone-0]', '555')
  await tab.fill('input[name=rep-days-0]', 'daily')
  await tab.fill('input[name=rep-hours-0]', '00:00-24:00')
  await tab.getByTestId('save-roster').click()
  await tab.getByRole('alert').filter({ hasText: 'Sam Rivera' }).waitFor()
  await tab.fill('input[name=rep-phone-0]', '(212) 555-0199')
  await tab.getByTestId('save-roster').click()
  await tab.getByTestId('roster-notice').waitFor()
  await tab.reload()
  await tab.getByTestId('on-duty').filter({ hasText: 'On duty now: Sam Rivera (+12125550199)' }).waitFor()
  await tab.screenshot({ path: join(out, '07b-roster.png'), fullPage: true })
  // An A/B test started from the page (script b a copy of the script) is saved and shown.
  await tab.fill('input[name=share_b]', '0.5')
  await tab.getByTestId('save-experiment').click()
  await tab.getByTestId('experiment-notice').filter({ hasText: 'A/B test saved' }).waitFor()
  assert.ok((await tab.inputValue('textarea[name=variant_b]')).includes('"greeting"'))

  // Pause and resume from the dashboard.
  await dashboard.getByTestId('pause').click()
  await dashboard.getByTestId('agent-status').filter({ hasText: 'paused' }).waitFor()
  await dashboard.getByTestId('resume').click()
  await dashboard.getByTestId('agent-status').filter({ hasText: 'active' }).waitFor()

  // On a phone-sized screen the dashboard still fits.
  await dashboard.setViewportSize({ width: 390, height: 844 })
  await dashboard.screenshot({ path: join(out, '08-dashboard-phone.png'), fullPage: true })
  const overflow = await dashboard.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
  assert.ok(overflow <= 1, `no sideways scrolling on a phone (overflow ${overflow}px)`)

  await dashboard.getByTestId('logout').click()
  await dashboard.getByTestId('login').waitFor()
  await dashboard.goto(`${base}/credentials`)
  await dashboard.getByTestId('login').waitFor()
  await context.close()

  assert.ok(!logs.includes(secret), 'the credential never reaches the logs')
  assert.ok(!logs.includes(password), 'the password never reaches the logs')
  for (const file of ['01-login.png', '02-dashboard.png', '04-credentials.png', '08-dashboard-phone.png']) {
    assert.ok(readdirSync(out).includes(file), `${file} kept`)
  }
})

test('with no accounts, the sandbox finishes test leads as the chosen callee', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  const page = await context.newPage()
  await login(page)
  await page.getByTestId('sandbox-banner').waitFor()
  // The dashboard, in another tab, follows the call question by question.
  const watch = await context.newPage()
  await login(watch)
  await watch.getByTestId('live-state').filter({ hasText: 'live' }).waitFor()
  const template = readFileSync(join(root, 'tests/fixtures/emails/01-plain-private-office.eml'), 'utf8')
  const cases = [
    { callee: 'qualified', phone: '415-555-0801', e164: '+14155550801', verdict: 'qualified' },
    { callee: 'voicemail', phone: '415-555-0802', e164: '+14155550802', verdict: 'voicemail' },
  ]
  for (const [n, c] of cases.entries()) {
    await page.getByTestId('nav').getByText('Test email').click()
    await page.getByTestId('callee').waitFor()
    await page.selectOption('select[name=callee]', c.callee)
    const email = template
      .replace('201-555-0123', c.phone)
      .replace('<20261124140311.1a2b3c@mail.unbounce.com>', `<sandbox-${n}@leadq.e2e>`)
    await page.fill('textarea[name=raw]', email)
    await page.click('button[type=submit]')
    const result = page.getByTestId('test-email-result')
    await result.waitFor()
    const leadId = (await result.locator('code').innerText()).trim()
    if (n === 0) {
      await page.screenshot({ path: join(out, '10-sandbox-test-email.png'), fullPage: true })
      const call = watch.getByTestId('live-call')
      // A question on the line, then the first answer heard (it stays until the call ends).
      await call.getByTestId('asking').first().waitFor({ timeout: 10000 })
      await call.getByTestId('heard').filter({ hasText: 'a private office' }).waitFor({ timeout: 10000 })
      await watch.screenshot({ path: join(out, '13-sandbox-live-call.png'), fullPage: true })
    }
    // The lead's page, once the sandbox's call, record, CRM row and text are done.
    await until(`lead ${c.e164} finished`, async () => {
      await page.goto(`${base}/leads/${leadId}`)
      await page.getByTestId('lead-detail').waitFor({ timeout: 5000 })
      const text = await page.getByTestId('lead-detail').innerText()
      return text.includes(c.verdict) && text.includes('CRM synced') && text.includes('text sent')
    }, 40000)
    if (c.callee === 'qualified') {
      // The transcript in words, the text that went out, the row the sandbox CRM holds.
      const transcript = page.getByTestId('transcript')
      await transcript.locator('tr', { hasText: 'How many people' }).filter({ hasText: '6 people' }).waitFor()
      await transcript.locator('tr', { hasText: 'What kind of space' }).filter({ hasText: 'Private office' }).waitFor()
      await transcript.getByText('$2,000 a month').waitFor()
      await page.getByTestId('text-sent').filter({ hasText: leadId }).waitFor()
      await page.getByTestId('crm-row').getByText('Verdict').waitFor()
      const shown = await page.getByTestId('lead-detail').innerText()
      assert.ok(!/\d{4}-\d{2}-\d{2}T\d{2}:/.test(shown), `no raw timestamps on the lead page: ${shown}`)
      assert.ok(!shown.includes('{"'), 'no JSON on the lead page')
    }
    await page.screenshot({ path: join(out, `11-sandbox-lead-${c.callee}.png`), fullPage: true })
  }
  await page.getByTestId('nav').getByText('Outbox').click()
  const outbox = page.getByTestId('outbox')
  for (const c of cases) {
    await outbox.getByTestId('outbox-call').filter({ hasText: c.e164 }).first().waitFor()
    await outbox.getByTestId('outbox-text').filter({ hasText: c.e164 }).first().waitFor()
  }
  await outbox.getByTestId('outbox-row').filter({ hasText: '+14155550801' }).first().waitFor()
  await outbox.getByTestId('outbox-call').filter({ hasText: '+14155550801' }).first().locator('summary').click()
  await outbox.getByText('six of us').first().waitFor()
  await page.screenshot({ path: join(out, '12-outbox.png'), fullPage: true })
  await context.close()
})

test('a viewer sees only what a viewer may do', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  const page = await context.newPage()
  await login(page, 'e2e-viewer')
  const nav = await page.getByTestId('nav').innerText()
  assert.ok(nav.includes('Dashboard') && nav.includes('Activity'), nav)
  assert.ok(!nav.includes('Credentials') && !nav.includes('Test email'), nav)
  assert.equal(await page.getByTestId('agent-controls').count(), 0, 'no agent controls for a viewer')
  await page.goto(`${base}/credentials`)
  await page.getByTestId('dashboard').waitFor()
  await page.getByTestId('nav').getByText('Settings').click()
  await page.getByTestId('rules').waitFor()
  assert.equal(await page.getByTestId('save-script').count(), 0, 'no saving for a viewer')
  await page.screenshot({ path: join(out, '09-viewer-settings.png'), fullPage: true })
  await context.close()
})
