import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import tailwindcss from '@tailwindcss/vite'

// During `npm run dev`, API calls go to a leadq on LEADQ_API (default 127.0.0.1:8000).
const api = process.env.LEADQ_API || 'http://127.0.0.1:8000'

export default defineConfig({
  plugins: [vue(), tailwindcss()],
  build: { outDir: 'dist', emptyOutDir: true },
  server: { proxy: { '/api': api } },
})
