package i18n

// offlineMessages are the texts of offline updates: update bundles on a
// USB stick (mxosctl bundle create, mxos-updater upgrade --from) and the
// queue of reports that wait for the server.
var offlineMessages = []entry{
	// mxos-updater upgrade --from
	{"install from the update bundle in DIR (made by mxosctl bundle create), without the network", "instalar desde el paquete de actualización en DIR (hecho con mxosctl bundle create), sin red"},
	{"%s is not a usable update bundle: %w", "%s no es un paquete de actualización utilizable: %w"},
	{"a bundle is installed only with signed channel metadata: set trusted_root to the shipped root.json", "un paquete solo se instala con los metadatos firmados del canal: ponga en trusted_root el root.json que trae el sistema"},
	{"this machine checks the public transparency log (log_key), which a bundle cannot prove; update it from the server or a school mirror", "este equipo revisa la bitácora pública de transparencia (log_key), y un paquete no puede comprobarla; actualícelo desde el servidor o desde un espejo de la escuela"},
	{"Bundle %s: version %s of channel %s for %s.", "Paquete %s: versión %s del canal %s para %s."},
	{"Bundle refused: %v", "Paquete rechazado: %v"},
	{"the files of the bundle do not match their signatures (the stick is damaged or was altered; make a new bundle): %w", "los archivos del paquete no coinciden con sus firmas (la memoria USB está dañada o fue alterada; haga un paquete nuevo): %w"},
	{"this bundle is for channel %s on %s, but this machine follows %s on %s", "este paquete es para el canal %s en %s, pero este equipo sigue %s en %s"},
	{"this bundle holds version %s, older than the installed %s", "este paquete trae la versión %s, más antigua que la instalada %s"},
	{"the bundle's signed channel metadata does not allow version %s as it is in the bundle: %v", "los metadatos firmados del paquete no permiten la versión %s tal como viene en el paquete: %v"},
	{"the rollout of version %s is halted (%s); it is not installed", "el despliegue de la versión %s está detenido (%s); no se instala"},
	{"this bundle holds only the changes from version %s, and this machine runs %s: use a full bundle (made without --from-release)", "este paquete solo trae los cambios desde la versión %s, y este equipo tiene %s: use un paquete completo (hecho sin --from-release)"},
	{"this bundle's signed metadata is older than what this machine has already seen (it was online since the bundle was made); make a new bundle: %w", "los metadatos firmados de este paquete son más viejos que los que este equipo ya vio (estuvo en línea después de que se hizo el paquete); haga un paquete nuevo: %w"},
	// the report queue
	{"saving the report for later: %w", "al guardar el reporte para después: %w"},
	{"The server cannot be reached; the report (%s) will be sent later.", "No se puede llegar al servidor; el reporte (%s) se enviará después."},
	{"The server refused a saved report (%s); it is dropped: %v", "El servidor rechazó un reporte guardado (%s); se descarta: %v"},

	// deciding without the server
	{"Could not remember the server's answer: %v", "No se pudo guardar la respuesta del servidor: %v"},
	{"The server cannot be reached, and it last held this machine (%s); waiting for it.", "No se puede llegar al servidor, y la última vez dejó detenido este equipo (%s); se espera al servidor."},
	{"The server cannot be reached, and the saved channel metadata cannot be used: %v", "No se puede llegar al servidor, y los metadatos del canal guardados no se pueden usar: %v"},
	{"The server cannot be reached (%v); deciding from the signed channel metadata.", "No se puede llegar al servidor (%v); se decide con los metadatos firmados del canal."},

	// mxosctl bundle create
	{"Make update bundles for machines without a network (USB sticks)", "Hace paquetes de actualización para equipos sin red (memorias USB)"},
	{"Write a self-contained update bundle of a channel's current release", "Escribe un paquete de actualización completo con la versión actual de un canal"},
	{"--channel, --arch and --out are required", "--channel, --arch y --out son obligatorios"},
	{"--trusted-root: %w", "--trusted-root: %w"},
	{"--trusted-keys: %w", "--trusted-keys: %w"},
	{"making the bundle: %w", "al hacer el paquete: %w"},
	{"Bundle of version %s (%s, %s, commit %s) written to %s.", "Paquete de la versión %s (%s, %s, commit %s) escrito en %s."},
	{"On each machine: mxos-updater upgrade --from DIR (where DIR is this directory on the USB stick).", "En cada equipo: mxos-updater upgrade --from DIR (donde DIR es esta carpeta en la memoria USB)."},
	{"channel (e.g. edu)", "canal (p. ej. edu)"},
	{"architecture (e.g. x86_64)", "arquitectura (p. ej. x86_64)"},
	{"release to bundle (default: the channel's rollout, else its newest release)", "versión a empaquetar (por omisión: la del despliegue del canal, si no, la más reciente)"},
	{"new or empty directory to write the bundle to", "carpeta nueva o vacía donde escribir el paquete"},
	{"release public keys, as machines ship them (env MXOS_TRUSTED_KEYS)", "llaves públicas de versiones, como las traen los equipos (variable MXOS_TRUSTED_KEYS)"},
	{"the signed metadata's root.json, as machines ship it (env MXOS_TRUSTED_ROOT)", "el root.json de los metadatos firmados, como lo traen los equipos (variable MXOS_TRUSTED_ROOT)"},
	{"no progress counter", "sin contador de avance"},
	{"make a smaller bundle with only the changes from this release of the channel (repeat for several); it installs only on machines that run one of them", "hacer un paquete más chico con solo los cambios desde esta versión del canal (repítalo para varias); se instala solo en equipos que tengan una de ellas"},
}
