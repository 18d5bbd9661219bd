/** esbuild bundles imported stylesheets into app.css (bin/build-ui.mjs). */
declare module '*.css';
