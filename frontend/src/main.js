import { createApp } from 'vue'
import { createRouter, createWebHistory } from 'vue-router'
import './style.css'
import App from './App.vue'
import { session, can } from './api.js'
import Login from './views/Login.vue'
import Dashboard from './views/Dashboard.vue'
import Leads from './views/Leads.vue'
import TestEmail from './views/TestEmail.vue'
import Credentials from './views/Credentials.vue'
import Activity from './views/Activity.vue'
import Settings from './views/Settings.vue'
import Outbox from './views/Outbox.vue'

const routes = [
  { path: '/login', component: Login, meta: { public: true } },
  { path: '/', component: Dashboard, meta: { title: 'Dashboard' } },
  { path: '/leads/:id?', component: Leads, meta: { title: 'Leads' } },
  { path: '/test-email', component: TestEmail, meta: { title: 'Test email', access: 'manage' } },
  { path: '/credentials', component: Credentials, meta: { title: 'Credentials', access: 'manage' } },
  { path: '/activity', component: Activity, meta: { title: 'Activity' } },
  { path: '/settings', component: Settings, meta: { title: 'Settings' } },
  { path: '/outbox', component: Outbox, meta: { title: 'Outbox' } },
  { path: '/:rest(.*)', redirect: '/' },
]

const router = createRouter({ history: createWebHistory(), routes })
router.beforeEach((to) => {
  if (!to.meta.public && !session.token) return '/login'
  if (to.meta.access && !can(to.meta.access)) return '/'
  return true
})

createApp(App).use(router).mount('#app')
